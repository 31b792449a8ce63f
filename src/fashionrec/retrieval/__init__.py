"""Two-tower retrieval: vocabularies, tf.data input from Delta snapshots, the TFRS model, the FAISS index."""
