"""OncoLabel MONAI Label app: connects OncoLabel library objects to MONAI Label (see lib/oncolabel/server).

Start it with ``oncolabel serve --studies DIR`` (MONAI Label's ``start_server`` with OncoLabel's fixes applied).
Research use only.
"""

from oncolabel.server import compat

compat.apply()  # before any monailabel module that imports pydicom_seg (also in MONAI Label's train subprocess)

from monailabel.interfaces.app import MONAILabelApp  # noqa: E402

from oncolabel import RESEARCH_USE_ONLY, __version__  # noqa: E402
from oncolabel.server.components import AppComponents  # noqa: E402


class OncoLabelApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        self.components = AppComponents(studies, conf)
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="OncoLabel",
                         description=f"Oncologic imaging AI tasks ({RESEARCH_USE_ONLY})", version=__version__)

    def infer(self, request, datastore=None):
        self.components.check_image_request(request, datastore or self.datastore())
        return super().infer(request, datastore)

    def _load_sessions(self, load=False):
        return self.components.sessions() if load else None

    def init_datastore(self):
        return self.components.datastore()

    def init_infers(self):
        return self.components.infers()

    def init_trainers(self):
        return self.components.trainers()

    def init_strategies(self):
        return self.components.strategies()

    def init_scoring_methods(self):
        return self.components.scoring_methods()
