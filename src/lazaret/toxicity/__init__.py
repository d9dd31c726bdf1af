"""fastText toxicity models: text normalisation, loading/scoring, training and evaluation."""
