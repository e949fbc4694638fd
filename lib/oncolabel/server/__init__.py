"""MONAI Label server glue (imports monailabel; nothing in ``oncolabel`` imports this package by default)."""
