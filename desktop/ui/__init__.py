"""Hearth's window: PySide6 widgets over the core services. Thin: no business logic here."""
