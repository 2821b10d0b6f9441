"""Decomposition workbench: take neural networks and neural recordings apart.

One cached forward pass feeds four analyses: attention-output sparse
autoencoders (:mod:`workbench.sae`), neural-collapse geometry
(:mod:`workbench.collapse`), dynamic functional connectomes
(:mod:`workbench.connectome`) and spectra of layer ranks
(:mod:`workbench.spectra`). Results are xarray objects with named dims;
:mod:`workbench.figures` turns them into plotly figures and paper files.

Examples
--------
>>> import workbench
>>> workbench.__version__
'0.1.0'
"""

__version__ = "0.1.0"
