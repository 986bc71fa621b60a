"""edgeft/models."""
