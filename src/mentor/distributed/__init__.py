"""See DESIGN.md §3."""
