"""On-device code: the camera application and its packaging; uses only edgeft.runtime."""
