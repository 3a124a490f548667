"""Model implementations shipped with tfxai (architectures and offline weight converters)."""
