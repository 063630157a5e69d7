"""The base of every error Hearth shows a person: str() is a sentence that says what to do."""


class HearthError(Exception):
    pass
