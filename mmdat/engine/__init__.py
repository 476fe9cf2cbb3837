from .hooks import DATHook

__all__ = ['DATHook']
