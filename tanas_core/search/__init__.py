"""Stage 6, architecture search: genotypes and search spaces (``space``), the cell networks (``cells``), FUSE and
random search (``fuse``), closest tasks -> related space -> search end to end (``nas``), and the source's comparison
table (``comparison``)."""
