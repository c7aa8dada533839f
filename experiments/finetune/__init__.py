"""Fine-tuning the MiniLM encoder end to end (one H200 run; the shipped predictor stays frozen)."""
