"""Software-defined assets, one module per stage of the GENRE lineage graph."""
