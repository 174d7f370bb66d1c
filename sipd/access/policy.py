"""The scope every RPC needs. docs/security.md lists the same table for people."""

from __future__ import annotations

from sipd.access.tokens import Scope

# Answer without a token: health says only SERVING or not, no data (load
# balancers and probes carry no token).
OPEN_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    }
)

_READ = {
    "sip.v1.ProjectService": ("GetProject", "ListProjects"),
    "sip.v1.LabelingService": ("GetScene", "ListScenes", "ListRois"),
    "sip.v1.DatasetService": ("GetDataset",),
    "sip.v1.TrainingService": ("ListModels", "GetModel"),
    "sip.v1.PreprocessService": ("ListPreprocessors", "GetRecipe", "ListRecipes"),
    "sip.v1.WatchService": ("GetWatch", "ListWatches"),
    "sip.v1.JobService": ("GetJob", "ListJobs", "WatchJob"),
    "sip.v1.SystemService": ("GetStatus",),
    "grpc.reflection.v1alpha.ServerReflection": ("ServerReflectionInfo",),
    "grpc.reflection.v1.ServerReflection": ("ServerReflectionInfo",),
}

# Label and train: everything that adds work or writes files within the
# allowed roots, and undoing one's own drawing. Reading a raster on the
# daemon's disk (InspectRaster) is here too: it reads with the daemon's rights.
_LABEL = {
    "sip.v1.ProjectService": ("CreateProject",),
    "sip.v1.LabelingService": (
        "CreateScene", "CreateRoi", "DeleteRoi", "ImportRois", "ExportRois", "ComputeMasks",
    ),
    "sip.v1.DatasetService": ("PrepareDataset",),
    "sip.v1.TrainingService": ("Train", "Test", "ExportModel"),
    "sip.v1.PredictionService": ("Predict", "PredictStream", "Suggest"),
    "sip.v1.PreprocessService": ("InspectRaster", "Preprocess", "CreateRecipe"),
    "sip.v1.WatchService": ("CreateWatch", "PauseWatch", "ResumeWatch"),
    "sip.v1.JobService": ("CancelJob",),
}  # fmt: skip

# Admin: what destroys data others rely on, and diagnostics (device and host details).
_ADMIN = {
    "sip.v1.ProjectService": ("DeleteProject",),
    "sip.v1.LabelingService": ("DeleteScene",),
    "sip.v1.TrainingService": ("DeleteModel",),
    "sip.v1.WatchService": ("DeleteWatch",),
    "sip.v1.PreprocessService": ("DeleteRecipe",),
    "sip.v1.SystemService": ("RunDiagnostics",),
}

SCOPES: dict[str, Scope] = {
    f"/{service}/{method}": scope
    for table, scope in ((_READ, Scope.READ), (_LABEL, Scope.LABEL), (_ADMIN, Scope.ADMIN))
    for service, methods in table.items()
    for method in methods
}


def required_scope(method: str) -> Scope | None:
    """None for an open method; a method nobody listed needs admin (closed by default)."""
    if method in OPEN_METHODS:
        return None
    return SCOPES.get(method, Scope.ADMIN)
