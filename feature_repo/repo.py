"""Feast declarations for DashCLIP (collected by `feast apply`; no logic here).

Objects come from `features.definitions.build_definitions` (schemas and paths documented
there): entities product / query / consumer / category, embedding views per live model version
(`product_embedding__<v>`, `query_embedding__<v>`, `consumer_embedding__<v>`), the ranker's
stats views (`product_stats`, `category_stats`, `consumer_stats`) and one ranker feature service
per version (`ranker__<v>`). Data folder: `$DASHCLIP_FEATURE_DATA` (default `data/` here); live
versions: `$DASHCLIP_MODEL_VERSIONS` (comma list) or the `model_version=` folders on disk.
"""

from pathlib import Path

from features.definitions import build_definitions, default_data_dir, discover_model_versions

_DATA_DIR = default_data_dir(Path(__file__).resolve().parent)
_DEFS = build_definitions(_DATA_DIR, discover_model_versions(_DATA_DIR))

# feast apply collects Feast objects that are module attributes
globals().update(_DEFS.entities)
globals().update(_DEFS.sources)
globals().update(_DEFS.views)
globals().update(_DEFS.services)
