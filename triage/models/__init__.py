"""Networks and model packages."""
