"""Developer tools that read the code itself (not used at run time)."""
