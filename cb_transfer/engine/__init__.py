"""Training-loop additions registered in ``cb_transfer``'s hook registry."""
from .exact_resume import ExactResumeHook
from .progress import SuiteProgressHook

__all__ = ['ExactResumeHook', 'SuiteProgressHook']
