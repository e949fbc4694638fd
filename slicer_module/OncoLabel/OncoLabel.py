"""OncoLabel: the radiologist's front end of the OncoLabel server in 3D Slicer (research use only).

Thin glue: the widget connects the GUI to :class:`OncoLabelLogic`; the logic prepares files and nodes on the GUI
thread and hands server calls to background jobs. Everything that can live outside Slicer is in ``OncoLabelLib``
(plain Python, tested with pytest against the real server). Works with Slicer 5.8 (Python 3.9) and later.
"""

from __future__ import annotations

import glob
import html
import logging
import os
import shutil
import tempfile
import time
from typing import Annotated, Any, Callable, List, Optional, Sequence

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from OncoLabelLib import mrml, tables
from OncoLabelLib.errors import MissingInputError, ModuleError, describe
from OncoLabelLib.jobs import CANCELLED, DONE, Job, JobContext
from OncoLabelLib.protocol import (CLASSIFICATION, MASK_INPUT, RENAL_PHASES, SCORE, SEGMENTATION, ServerInfo,
                                   TaskDescription)
from OncoLabelLib.service import OncoLabelService, safe_image_id
from OncoLabelLib.settings import ModuleSettings

#: parameter-node field of each renal phase selector (phase order from OncoLabelLib.protocol.RENAL_PHASES)
PHASE_PARAMETERS = {phase: "phase" + phase.capitalize() for phase in RENAL_PHASES}


class OncoLabel(ScriptedLoadableModule):
    """Module description shown in Slicer."""

    def __init__(self, parent: Any) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("OncoLabel")
        self.parent.categories = [_("Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["OncoLabel contributors"]
        self.parent.helpText = _(
            "Front end of an OncoLabel server (MONAI Label): active-learning segmentation of bone metastases, "
            "classification with heat maps, and risk scores. Research use only: not for clinical diagnosis or "
            "treatment decisions. See docs/slicer.md in the OncoLabel repository.")
        self.parent.acknowledgementText = _("Built on 3D Slicer and MONAI Label.")


@parameterNodeWrapper
class OncoLabelParameterNode:
    """GUI state saved with the scene (names match the ``SlicerParameterName`` properties of OncoLabel.ui)."""

    inputVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode
    strategy: Annotated[str, Choice(["uncertainty", "random"])] = "uncertainty"
    trainIterations: Annotated[int, WithinRange(1, 100000)] = 120
    classificationVolume: vtkMRMLScalarVolumeNode
    phaseUnenhanced: vtkMRMLScalarVolumeNode
    phaseCorticomedullary: vtkMRMLScalarVolumeNode
    phaseNephrographic: vtkMRMLScalarVolumeNode
    phaseExcretory: vtkMRMLScalarVolumeNode
    scoreVolume: vtkMRMLScalarVolumeNode
    heatmapOpacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    showHeatmap: bool = True
    heatmapVolume: vtkMRMLScalarVolumeNode
    resultTable: vtkMRMLTableNode


class OncoLabelWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """GUI glue: buttons start logic jobs; a QTimer polls the running job; errors become one sentence."""

    def __init__(self, parent: Any = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: Optional[OncoLabelLogic] = None
        self._parameterNode: Optional[OncoLabelParameterNode] = None
        self._parameterNodeGuiTag = None
        self._job: Optional[Job] = None
        self._onJobDone: Optional[Callable[[Any], None]] = None
        self._errorDetails = ""
        self._overlayState: tuple = ()
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self._pollJob)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/OncoLabel.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = OncoLabelLogic()
        for url in self.logic.settings.url_history:
            self.ui.serverUrlComboBox.addItem(url)
        self.ui.serverUrlComboBox.setCurrentText(self.logic.settings.last_url)
        self.ui.renalPhasesGroupBox.setVisible(False)
        self.ui.classificationTumourSelector.setVisible(False)
        buttons = (
            (self.ui.connectButton, self.onConnect), (self.ui.loginButton, self.onLogin),
            (self.ui.forgetConsentButton, self.onForgetConsent), (self.ui.nextCaseButton, self.onNextCase),
            (self.ui.segmentButton, self.onSegment), (self.ui.editSegmentationButton, self.onEditSegmentation),
            (self.ui.submitLabelButton, self.onSubmit), (self.ui.trainButton, self.onTrain),
            (self.ui.classifyButton, self.onClassify), (self.ui.scoreButton, self.onScore),
            (self.ui.cancelButton, self.onCancel), (self.ui.detailsButton, self.onDetails),
        )
        for button, slot in buttons:
            button.connect("clicked(bool)", lambda checked=False, s=slot: s())
        self.ui.classificationModelComboBox.connect("currentIndexChanged(int)", self._updateClassificationInputs)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    # --- Slicer module life cycle --------------------------------------------------------------------------------
    def cleanup(self) -> None:
        self._timer.stop()
        if self._job is not None:
            self._job.cancel()
        self.removeObservers()
        if self.logic is not None:
            self.logic.cleanup()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller: Any, event: Any) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller: Any, event: Any) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: Optional[OncoLabelParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def _onParameterNodeModified(self, caller: Any = None, event: Any = None) -> None:
        """Opacity slider and hide toggle: re-apply the overlay only when one of them (or the heat map) changed."""
        p = self._parameterNode
        if p is None or p.heatmapVolume is None:
            return
        state = (p.heatmapVolume.GetID(), p.heatmapOpacity, p.showHeatmap)
        if state != self._overlayState:
            self._overlayState = state
            self.logic.setHeatmapDisplay(p.heatmapVolume, p.classificationVolume, p.heatmapOpacity, p.showHeatmap)

    # --- jobs ------------------------------------------------------------------------------------------------------
    def _run(self, makeJob: Callable[[], Job], onDone: Callable[[Any], None], *, upload: bool = False) -> None:
        """Prepare a job on the GUI thread (files, consent), start it, and poll it until it ends."""
        if self._job is not None:
            self._showError(ModuleError(_("another task is still running: wait for it or cancel it")))
            return
        try:
            if upload and not self._askConsent():
                return
            job = makeJob()
        except Exception as exc:  # noqa: BLE001 -- the widget edge: every error becomes one sentence
            self._showError(exc)
            return
        self._job, self._onJobDone = job.start(), onDone
        self._setBusy(True)
        self._timer.start()

    def _pollJob(self) -> None:
        status = self._job.poll()
        self.ui.statusLabel.text = status.text()
        if status.fraction is None:
            self.ui.progressBar.setRange(0, 0)
        else:
            self.ui.progressBar.setRange(0, 100)
            self.ui.progressBar.value = int(100 * status.fraction)
        if not status.finished:
            return
        self._timer.stop()
        job, self._job = self._job, None
        self._setBusy(False)
        if status.state == DONE:
            try:
                self._onJobDone(job.result())
            except Exception as exc:  # noqa: BLE001 -- the widget edge
                self._showError(exc)
        elif status.state == CANCELLED:
            self.ui.statusLabel.text = _("Cancelled.")
        else:
            self._showError(job.error)

    def _setBusy(self, busy: bool) -> None:
        self.ui.cancelButton.enabled = busy
        if not busy:
            self.ui.progressBar.setRange(0, 100)
            self.ui.progressBar.value = 0

    def _showError(self, exc: BaseException) -> None:
        url = self.logic.service.url if self.logic and self.logic.service else self.ui.serverUrlComboBox.currentText
        message = describe(exc, url=url)
        logging.info("OncoLabel: %s\n%s", message.text, message.details)
        self.ui.statusLabel.text = message.text
        self._errorDetails = message.details
        self.ui.detailsButton.enabled = True

    def _askConsent(self) -> bool:
        if self.logic.hasConsent():
            return True
        text = _("Images and segmentations will be sent to {url}. Send patient data to this server?").format(
            url=self.logic.service.url)
        if slicer.util.confirmYesNoDisplay(text, windowTitle=_("OncoLabel: send data?")):
            self.logic.grantConsent()
            return True
        self.ui.statusLabel.text = _("Nothing was sent: consent declined.")
        return False

    def onCancel(self) -> None:
        if self._job is not None:
            self._job.cancel()

    def onDetails(self) -> None:
        slicer.util.infoDisplay(self.ui.statusLabel.text, windowTitle=_("OncoLabel: details"),
                                detailedText=self._errorDetails)

    # --- server -----------------------------------------------------------------------------------------------
    def onConnect(self) -> None:
        url, token = self.ui.serverUrlComboBox.currentText, self.ui.tokenLineEdit.text
        self._run(lambda: self.logic.connectJob(url, token), self._onConnected)

    def _onConnected(self, info: ServerInfo) -> None:
        for combo, kind in ((self.ui.segmentationModelComboBox, SEGMENTATION),
                            (self.ui.classificationModelComboBox, CLASSIFICATION),
                            (self.ui.scoreModelComboBox, SCORE)):
            combo.clear()
            for model in info.models_of(kind):
                combo.addItem(model.task.title, model.name)
        counts = ", ".join(f"{len(info.models_of(k))} {k}" for k in (SEGMENTATION, CLASSIFICATION, SCORE))
        self.ui.serverStatusLabel.text = _("Connected: OncoLabel {version} at {url} ({counts}).").format(
            version=info.version, url=info.url, counts=counts)
        self.ui.statusLabel.text = ""
        self._updateClassificationInputs()

    def onLogin(self) -> None:
        username = qt.QInputDialog.getText(slicer.util.mainWindow(), _("OncoLabel login"), _("User name:"))
        if not username:
            return
        password = qt.QInputDialog.getText(slicer.util.mainWindow(), _("OncoLabel login"), _("Password:"),
                                           qt.QLineEdit.Password)
        self._run(lambda: self.logic.loginJob(username, password),
                  lambda _result: setattr(self.ui.statusLabel, "text", _("Logged in.")))

    def onForgetConsent(self) -> None:
        self.logic.forgetConsent()
        self.ui.statusLabel.text = _("Consent forgotten: you will be asked before data is sent again.")

    # --- segmentation -------------------------------------------------------------------------------------------
    def onNextCase(self) -> None:
        self._run(lambda: self.logic.nextCaseJob(self._parameterNode.strategy), self._onNextCase)

    def _onNextCase(self, caseAndPath: Any) -> None:
        volume = self.logic.loadCase(*caseAndPath)
        self._parameterNode.inputVolume = volume
        slicer.util.setSliceViewerLayers(background=volume, fit=True)
        self.ui.statusLabel.text = _("Next case: {name}.").format(name=volume.GetName())

    def onSegment(self) -> None:
        volume, model = self._parameterNode.inputVolume, self.ui.segmentationModelComboBox.currentData
        self._run(lambda: self.logic.segmentJob(model, volume), self._onSegmented,
                  upload=self.logic.needsUpload(volume))

    def _onSegmented(self, result: Any) -> None:
        volume = self._parameterNode.inputVolume
        self._parameterNode.segmentation = self.logic.showSegmentation(result, volume)
        self._showTable(tables.lesion_table(result))
        self.ui.modelVersionLabel.text = _("Result by {task} model {version}.").format(
            task=result.task, version=result.model_version)

    def onEditSegmentation(self) -> None:
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(self._parameterNode.segmentation)
        editor.setSourceVolumeNode(self._parameterNode.inputVolume)

    def onSubmit(self) -> None:
        volume, segmentation = self._parameterNode.inputVolume, self._parameterNode.segmentation
        self._run(lambda: self.logic.submitJob(segmentation, volume), self._onSubmitted, upload=True)

    def _onSubmitted(self, answer: Any) -> None:
        self.ui.statusLabel.text = _("Correction of {image} submitted.").format(image=answer.get("image", ""))

    def onTrain(self) -> None:
        model, iterations = self.ui.segmentationModelComboBox.currentData, self._parameterNode.trainIterations
        self._run(lambda: self.logic.trainJob(model, iterations), self._onTrained)

    def _onTrained(self, progress: Any) -> None:
        self.ui.statusLabel.text = progress.message
        self.ui.modelVersionLabel.text = _("Served model: {version}.").format(version=progress.model_version)

    # --- classification -----------------------------------------------------------------------------------------
    def _updateClassificationInputs(self, index: int = -1) -> None:
        """Phase selectors for multi-phase classifiers, a tumour selector for those that need the outline."""
        model = self.ui.classificationModelComboBox.currentData
        try:
            task = self.logic.task(model) if model else TaskDescription("", CLASSIFICATION, "")
        except ModuleError:  # not connected (any more): show the single-volume inputs
            task = TaskDescription("", CLASSIFICATION, "")
        phases = len(task.image_inputs) > 1
        self.ui.renalPhasesGroupBox.setVisible(phases)
        self.ui.classificationVolumeSelector.setEnabled(not phases)
        self.ui.classificationTumourSelector.setVisible(MASK_INPUT in task.inputs)
        self.ui.classificationTumourLabel.setVisible(MASK_INPUT in task.inputs)

    def onClassify(self) -> None:
        model = self.ui.classificationModelComboBox.currentData
        tumour = self.ui.classificationTumourSelector
        self._run(lambda: self.logic.classifyJob(model, self._classificationInputs(model), tumour.currentNode(),
                                                 tumour.currentSegmentID()), self._onClassified, upload=True)

    def _classificationInputs(self, model: str) -> List[Any]:
        names = self.logic.task(model).image_inputs
        if len(names) == 1:
            return [self._parameterNode.classificationVolume]
        return [getattr(self._parameterNode, PHASE_PARAMETERS[name]) for name in names]

    def _onClassified(self, result: Any) -> None:
        p = self._parameterNode
        inputs = dict(zip(self.logic.task(result.task).image_inputs, self._classificationInputs(result.task)))
        background = inputs.get(result.heatmap_grid_of) or next(iter(inputs.values()))
        p.heatmapVolume = self.logic.showHeatmap(result, background, p.heatmapOpacity, p.showHeatmap)
        self._showTable(tables.classification_table(result))
        self.ui.classificationResultLabel.text = self._summaryText(result)

    # --- scoring ------------------------------------------------------------------------------------------------
    def onScore(self) -> None:
        model, ct = self.ui.scoreModelComboBox.currentData, self._parameterNode.scoreVolume
        selector = self.ui.tumourSegmentSelector
        self._run(lambda: self.logic.scoreJob(model, ct, selector.currentNode(), selector.currentSegmentID()),
                  self._onScored, upload=True)

    def _onScored(self, result: Any) -> None:
        self._showTable(tables.score_table(result))
        self.ui.scoreResultLabel.text = self._summaryText(result, rich=True)

    # --- results ------------------------------------------------------------------------------------------------
    def _showTable(self, table: tables.Table) -> None:
        node = self.logic.showTable(table, self._parameterNode.resultTable)
        self._parameterNode.resultTable = node
        self.ui.resultsTableView.setMRMLTableNode(node)

    @staticmethod
    def _summaryText(result: Any, rich: bool = False) -> str:
        lines = tables.summary(result)
        if rich:
            return "<br>".join(f"<b>{html.escape(k)}:</b> {html.escape(v)}" for k, v in lines)
        return "\n".join(f"{k}: {v}" for k, v in lines)


class OncoLabelLogic(ScriptedLoadableModuleLogic):
    """Scene work on the GUI thread, server work as background jobs; no dialogs (the widget asks the user).

    Args:
        settingsPath: settings file (URL history, consent); default: next to Slicer's user settings.
    """

    def __init__(self, settingsPath: Optional[str] = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.settings = ModuleSettings(settingsPath or self.defaultSettingsPath())
        self.service: Optional[OncoLabelService] = None
        self.workDir = tempfile.mkdtemp(prefix="OncoLabel-")

    @staticmethod
    def defaultSettingsPath() -> str:
        return os.path.join(os.path.dirname(slicer.app.slicerUserSettingsFilePath), "OncoLabel.json")

    def getParameterNode(self) -> OncoLabelParameterNode:
        return OncoLabelParameterNode(super().getParameterNode())

    def cleanup(self) -> None:
        shutil.rmtree(self.workDir, ignore_errors=True)

    def _connected(self) -> OncoLabelService:
        if self.service is None or self.service.info is None:
            raise ModuleError(_("connect to an OncoLabel server first"))
        return self.service

    def _tempPath(self, stem: str, suffix: str) -> str:
        fd, path = tempfile.mkstemp(prefix=safe_image_id(stem) + "-", suffix=suffix, dir=self.workDir)
        os.close(fd)
        return path

    def _job(self, title: str, fn: Callable[[JobContext], Any], removeAfter: Sequence[str] = ()) -> Job:
        """A job whose input files are deleted when it ends (the worker owns them once started)."""

        def run(ctx: JobContext) -> Any:
            try:
                return fn(ctx)
            finally:
                for path in removeAfter:
                    if os.path.exists(path):
                        os.remove(path)

        return Job(run, title=title)

    # --- connection and consent ---------------------------------------------------------------------------------
    def connectJob(self, url: str, token: Optional[str] = None) -> Job:
        url = self.settings.remember_url(url)
        self.settings.save()
        self.service = OncoLabelService(url, self.settings, token=token or None)
        return self._job(_("Connecting to {url}").format(url=url), self.service.connect)

    def loginJob(self, username: str, password: str) -> Job:
        if self.service is None:
            raise ModuleError(_("type the server address and press Connect first"))
        service = self.service
        return self._job(_("Logging in"), lambda ctx: service.login(username, password, ctx))

    def hasConsent(self) -> bool:
        return self._connected().settings.has_consent(self.service.url)

    def grantConsent(self) -> None:
        self.settings.grant_consent(self._connected().url)
        self.settings.save()

    def forgetConsent(self) -> None:
        if self.service is not None:
            self.settings.revoke_consent(self.service.url)
            self.settings.save()

    def task(self, model: str) -> TaskDescription:
        """How the connected server's ``model`` takes its inputs."""
        return self._connected().model(model).task

    # --- segmentation -------------------------------------------------------------------------------------------
    def imageIdOnServer(self, volume: Any) -> Optional[str]:
        """The datastore id of a volume downloaded from (or uploaded to) the connected server."""
        if volume is None or self.service is None:
            return None
        if volume.GetAttribute(mrml.ATTRIBUTE_PREFIX + "Server") != self.service.url:
            return None
        return volume.GetAttribute(mrml.ATTRIBUTE_PREFIX + "ImageId")

    def needsUpload(self, volume: Any) -> bool:
        return self.imageIdOnServer(volume) is None

    def nextCaseJob(self, strategy: str) -> Job:
        service = self._connected()
        return self._job(_("Next case"), lambda ctx: service.next_case(strategy, self.workDir, ctx))

    def loadCase(self, case: Any, path: str) -> Any:
        try:
            return mrml.load_volume(slicer.mrmlScene, path, case.image_id,
                                    attributes={"ImageId": case.image_id, "Server": self.service.url})
        finally:
            os.remove(path)

    def segmentJob(self, model: str, volume: Any) -> Job:
        service = self._connected()
        if volume is None:
            raise MissingInputError(_("select the image to segment"))
        imageId = self.imageIdOnServer(volume)
        if imageId is not None:
            return self._job(_("Running {model}").format(model=model),
                             lambda ctx: service.infer(model, image_id=imageId, ctx=ctx))
        service.require_consent()
        path = mrml.write_volume(volume, self._tempPath(volume.GetName(), ".nrrd"))
        return self._job(_("Running {model}").format(model=model),
                         lambda ctx: service.infer(model, file=path, ctx=ctx), [path])

    def showSegmentation(self, result: Any, volume: Any) -> Any:
        try:
            return mrml.segmentation_from_label_file(
                slicer.mrmlScene, result.label_path, result.label_names, name=f"{volume.GetName()} {result.task}",
                reference_volume=volume,
                attributes={"Task": result.task, "ModelVersion": result.model_version, "Notice": result.notice})
        finally:
            os.remove(result.label_path)

    def submitJob(self, segmentation: Any, volume: Any) -> Job:
        service = self._connected()
        if segmentation is None or volume is None:
            raise MissingInputError(_("select the image and its segmentation"))
        service.require_consent()
        task = segmentation.GetAttribute(mrml.ATTRIBUTE_PREFIX + "Task")
        models = service.info.models_of(SEGMENTATION)
        labels = service.model(task).labels if task else (models[0].labels if models else {})
        labelPath = mrml.segmentation_to_label_file(segmentation, volume, labels,
                                                    self._tempPath(volume.GetName(), ".nii.gz"))
        imageId, imagePath = self.imageIdOnServer(volume), None
        if imageId is None:
            imageId = safe_image_id(volume.GetName())
            imagePath = mrml.write_volume(volume, self._tempPath(volume.GetName(), ".nrrd"))
            volume.SetAttribute(mrml.ATTRIBUTE_PREFIX + "Server", service.url)
            volume.SetAttribute(mrml.ATTRIBUTE_PREFIX + "ImageId", imageId)
        removeAfter = [labelPath] + ([imagePath] if imagePath else [])
        return self._job(_("Submitting {image}").format(image=imageId),
                         lambda ctx: service.submit_label(imageId, labelPath, image_path=imagePath, ctx=ctx),
                         removeAfter)

    def trainJob(self, model: str, iterations: int) -> Job:
        service = self._connected()
        return self._job(_("Training {model}").format(model=model),
                         lambda ctx: service.train(model, max_iterations=iterations, ctx=ctx))

    # --- classification and scoring -------------------------------------------------------------------------------
    def classifyJob(self, model: str, volumes: Sequence[Any], segmentation: Any = None, segmentId: str = "") -> Job:
        """Single-volume classifiers get an upload; multi-input ones get their inputs stored in the datastore."""
        service = self._connected()
        service.require_consent()
        task = service.model(model, CLASSIFICATION).task
        if len(volumes) != len(task.image_inputs) or any(v is None for v in volumes):
            raise MissingInputError(_("select the input volume(s): {names}").format(names=", ".join(task.image_inputs)))
        if MASK_INPUT in task.inputs and segmentation is None:
            raise MissingInputError(_("select the tumour segment"))
        files = {name: mrml.write_volume(v, self._tempPath(v.GetName(), ".nrrd"))
                 for name, v in zip(task.image_inputs, volumes)}
        if MASK_INPUT in task.inputs:
            files[MASK_INPUT] = mrml.segment_mask_file(segmentation, segmentId, volumes[0],
                                                       self._tempPath("mask", ".nii.gz"))
        case = volumes[0].GetName()

        def run(ctx: JobContext) -> Any:
            if task.uses_datastore:
                return service.infer_case(model, files, case=case, ctx=ctx)
            return service.infer(model, file=files[task.image_inputs[0]], ctx=ctx)

        return self._job(_("Running {model}").format(model=model), run, list(files.values()))

    def showHeatmap(self, result: Any, background: Any, opacity: float, visible: bool) -> Optional[Any]:
        if result.heatmap_path is None:
            return None
        try:
            heatmap = mrml.heatmap_volume(slicer.mrmlScene, result.heatmap_path, f"{result.task} heat map",
                                          attributes={"Task": result.task, "ModelVersion": result.model_version})
        finally:
            os.remove(result.heatmap_path)
        self.setHeatmapDisplay(heatmap, background, opacity, visible)
        return heatmap

    def setHeatmapDisplay(self, heatmap: Any, background: Any, opacity: float, visible: bool) -> None:
        mrml.show_overlay(slicer.mrmlScene, background, heatmap, opacity=opacity, visible=visible)

    def scoreJob(self, model: str, volume: Any, segmentation: Any, segmentId: str) -> Job:
        service = self._connected()
        service.require_consent()
        if volume is None or segmentation is None:
            raise MissingInputError(_("select the CT and the tumour segment"))
        maskPath = mrml.segment_mask_file(segmentation, segmentId, volume, self._tempPath("mask", ".nii.gz"))
        path = mrml.write_volume(volume, self._tempPath(volume.GetName(), ".nrrd"))
        return self._job(_("Running {model}").format(model=model),
                         lambda ctx: service.infer(model, file=path, mask_file=maskPath, ctx=ctx), [path, maskPath])

    def showTable(self, table: tables.Table, node: Any = None) -> Any:
        return mrml.table_node(slicer.mrmlScene, table, "OncoLabel results", node)


class OncoLabelTest(ScriptedLoadableModuleTest):
    """Runs in Slicer: offline checks, then every task the server at $ONCOLABEL_SERVER_URL offers."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_OfflineGlue()
        self.setUp()
        self.test_AllTasksAgainstServer()

    def _logic(self) -> OncoLabelLogic:
        return OncoLabelLogic(settingsPath=os.path.join(tempfile.mkdtemp(prefix="OncoLabelTest-"), "s.json"))

    @staticmethod
    def _finish(job: Job, timeout: float = 900.0) -> Any:
        """Run a job the way the widget does: the GUI keeps processing events while it runs."""
        job.start()
        deadline = time.monotonic() + timeout
        while not job.poll().finished and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        return job.result()

    def _sampleVolume(self) -> Any:
        folder = os.environ.get("ONCOLABEL_SAMPLE_DATA") or os.path.join(
            os.path.dirname(__file__), "..", "..", "sample-data", "bone-metastasis", "images")
        files = sorted(glob.glob(os.path.join(folder, "*.nii.gz")))
        self.assertTrue(files, f"no sample data in {folder}: set ONCOLABEL_SAMPLE_DATA")
        return slicer.util.loadVolume(files[0])

    @staticmethod
    def _sphereSegment(volume: Any) -> tuple:
        """A 10 mm sphere in the middle of ``volume``, as a tumour segment."""
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tumour")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        bounds = [0.0] * 6
        volume.GetRASBounds(bounds)
        sphere = vtk.vtkSphereSource()
        sphere.SetCenter((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2)
        sphere.SetRadius(10.0)
        sphere.Update()
        return segmentation, segmentation.AddSegmentFromClosedSurfaceRepresentation(sphere.GetOutput(), "tumour")

    def test_OfflineGlue(self) -> None:
        self.delayDisplay("Offline checks")
        logic = self._logic()
        job = logic.connectJob("http://0.0.0.0:8000")
        with self.assertRaises(Exception) as caught:
            self._finish(job)
        self.assertIn("127.0.0.1:8000", describe(caught.exception).text)
        volume = self._sampleVolume()
        self.assertTrue(logic.needsUpload(volume))
        self.delayDisplay("Offline checks passed")

    def test_AllTasksAgainstServer(self) -> None:
        url = os.environ.get("ONCOLABEL_SERVER_URL")
        if not url:
            self.delayDisplay("ONCOLABEL_SERVER_URL is not set: server test skipped")
            return
        logic = self._logic()
        info = self._finish(logic.connectJob(url))
        logic.grantConsent()
        volume = self._sampleVolume()
        volume.SetName(f"slicer_selftest_{int(time.time())}")
        for model in info.models_of(SEGMENTATION):
            self.delayDisplay(f"Segmentation: {model.name}")
            result = self._finish(logic.segmentJob(model.name, volume))
            segmentation = logic.showSegmentation(result, volume)
            names = {segmentation.GetSegmentation().GetNthSegment(i).GetName()
                     for i in range(segmentation.GetSegmentation().GetNumberOfSegments())}
            self.assertEqual(names, set(result.label_names))
            self.assertEqual(segmentation.GetAttribute("OncoLabel.ModelVersion"), result.model_version)
            answer = self._finish(logic.submitJob(segmentation, volume))
            self.assertEqual(answer.get("image"), volume.GetName())
        tumour, tumourId = self._sphereSegment(volume)
        for model in info.models_of(CLASSIFICATION):
            self.delayDisplay(f"Classification: {model.name}")
            inputs = [volume] * len(model.task.image_inputs)
            result = self._finish(logic.classifyJob(model.name, inputs, tumour, tumourId))
            self.assertAlmostEqual(sum(result.probabilities.values()), 1.0, places=2)
            heatmap = logic.showHeatmap(result, volume, 0.5, True)
            table = logic.showTable(tables.classification_table(result))
            self.assertEqual(table.GetNumberOfRows(), len(result.probabilities))
            if heatmap is not None:
                self.assertIsNotNone(heatmap.GetImageData())
        for model in info.models_of(SCORE):
            self.delayDisplay(f"Score: {model.name}")
            result = self._finish(logic.scoreJob(model.name, volume, tumour, tumourId))
            self.assertTrue(result.recommendation and result.risk_group)
            self.assertIn("research use only", result.notice.lower())
        self.delayDisplay("Server test passed")
