"""Result tables: collect the runs mmengine wrote, pair plain and +CB arms, report the gains."""
from .runs import Run, collect_runs, identify
from .stats import Gain, gain, paired_gain, summarize, unpaired_gain
from .table import FORMATS, REFERENCES, Row, Table, build_table

__all__ = ['Run', 'collect_runs', 'identify', 'Gain', 'gain', 'paired_gain', 'summarize',
           'unpaired_gain', 'FORMATS', 'REFERENCES', 'Row', 'Table', 'build_table']
