"""Request and response models of the public HTTP API (the 0.2.0 contract), one module per area."""
