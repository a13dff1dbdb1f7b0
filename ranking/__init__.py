"""LightGBM ads ranker over DashCLIP features: traffic simulator, training and lift report, ads server."""
