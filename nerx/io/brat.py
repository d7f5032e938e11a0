"""Placeholder, being written."""
NAME = "brat"
SUFFIXES: tuple[str, ...] = ()
DIALECTS: tuple[str, ...] = ()


def sniff(head: str) -> bool:
    return False


def read(source, report=None, **options):
    raise NotImplementedError


def write(docs, target, report=None, **options):
    raise NotImplementedError
