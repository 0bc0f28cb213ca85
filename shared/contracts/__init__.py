"""Wire models of the public contract, one module per area."""
