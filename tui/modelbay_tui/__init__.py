"""modelbay's terminal UI (Textual). It reaches servers only through ``modelbay.client.Client``."""
