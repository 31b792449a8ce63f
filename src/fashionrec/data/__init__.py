"""The retailer's data: Kaggle H&M schema, synthetic generator, CSV readers, validation rules."""
