"""What the report is made of (blocks), how it is drawn (charts), rendered (html, markdown), and
what its metrics are compared with (baseline). `vistage.report` decides what goes into it."""
