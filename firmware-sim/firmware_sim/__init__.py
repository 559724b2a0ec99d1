"""Firmware simulator: sensor firmware writing ``$PNT1`` frames on pseudo-terminals or
``socket://`` lines, following a deterministic scenario, with fault injection and a ground
truth of what every sensor really sent."""

from firmware_sim.devices import Devices, build_model
from firmware_sim.faults import Emission, FaultInjector
from firmware_sim.models import MODELS, BedWard, DeviceModel, Firmware, GateCounter, Kiosk
from firmware_sim.scenario import Fault, FaultType, Scenario, ScenarioError, load_scenario
from firmware_sim.scripted import BedEvent, CrowdEvent, QueueEvent, ScriptedDevice
from firmware_sim.simulation import PortMap, Simulation
from firmware_sim.truth import GroundTruth

__all__ = [
    "MODELS",
    "BedEvent",
    "BedWard",
    "CrowdEvent",
    "DeviceModel",
    "Devices",
    "Emission",
    "Fault",
    "FaultInjector",
    "FaultType",
    "Firmware",
    "GateCounter",
    "GroundTruth",
    "Kiosk",
    "PortMap",
    "QueueEvent",
    "Scenario",
    "ScenarioError",
    "ScriptedDevice",
    "Simulation",
    "build_model",
    "load_scenario",
]
