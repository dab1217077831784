"""Build tools, outside the hmr package: they make the files the package ships (docs/architecture.md)."""
