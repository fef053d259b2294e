# The flowq app is loaded when Django starts, so shared tasks bind to it.
from .flowq import app as flowq_app

__all__ = ("flowq_app",)
