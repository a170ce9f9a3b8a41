"""One adapter per system, all with the interface of ``base.Adapter``."""
