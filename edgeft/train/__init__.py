"""edgeft/train."""
