"""A Flower app whose server defends with qkrum (see ../README.md)."""
