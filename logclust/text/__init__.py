"""Text before the model: masking rules, their analysis, the mask cache, the tokenizer."""
