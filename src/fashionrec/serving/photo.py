"""Search by photo: the image encoder embeds a shopper's photo, an exact inner-product index over the
catalogue's image embeddings returns the closest articles.

`register` writes the gallery (every article's embedding under the current image model, from the
`image_embeddings` table: `snapshot.gallery`) into the serving snapshot and stages the encoder beside the
other models, so the registered recommender answers a photo without the lakehouse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fashionrec.recommender.layout import GALLERY_FILE
from fashionrec.retrieval.index import ArticleIndex
from fashionrec.similarity import encoder
from fashionrec.similarity.encoder import ENCODER_DIR


class PhotoSearch:
    """The encoder and the gallery, loaded once; `search` embeds one photo and ranks the catalogue."""

    def __init__(self, encoder_dir: str | Path, gallery_file: str | Path) -> None:
        self.encoder = encoder.load(encoder_dir)
        with np.load(gallery_file, allow_pickle=False) as data:
            ids, vectors = data["article_ids"].astype(str).tolist(), data["vectors"]
        self.index = ArticleIndex.build(vectors, ids, "exact")
        self.search(np.zeros((8, 8, 3), np.uint8), 1)  # traces the encoder's graph before the first request

    @staticmethod
    def available(models_dir: str | Path, snapshot_dir: str | Path) -> bool:
        """Were an image encoder and a gallery registered with the model?"""
        encoder = Path(models_dir) / ENCODER_DIR / "saved_model.pb"
        return encoder.exists() and (Path(snapshot_dir) / GALLERY_FILE).exists()

    @classmethod
    def from_folders(cls, models_dir: str | Path, snapshot_dir: str | Path) -> PhotoSearch | None:
        if not cls.available(models_dir, snapshot_dir):
            return None
        return cls(Path(models_dir) / ENCODER_DIR, Path(snapshot_dir) / GALLERY_FILE)

    @property
    def dimension(self) -> int:
        return int(self.index.index.d)

    def add(self, article_ids: list[str], vectors: np.ndarray | None) -> None:
        """Make articles added since the snapshot searchable (`recommender.fresh`)."""
        if article_ids and vectors is not None:
            self.index.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            self.index.article_ids = np.concatenate(
                [self.index.article_ids, np.asarray(article_ids, dtype=str)]
            )

    def search(self, photo: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k catalogue articles whose photos are closest to `photo` ((h, w, 3) uint8), closest first."""
        vector = encoder.embed_photo(self.encoder, photo)[np.newaxis]
        scores, ids = self.index.search(vector, k)
        return [(article, float(score)) for article, score in zip(ids[0], scores[0], strict=True)]
