"""Network primitives, I/O only: each step measured and its library's errors mapped to the
failure vocabulary. They know no settings file, no verdict and no other step."""
