"""edgeft/platform."""
