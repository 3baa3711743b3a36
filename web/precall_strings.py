"""What the pre-call check page and the consultation page's check card show.

Kept apart from ``web/pages.py`` so that both pages can take them: the verdict,
the reason for it (one per code of ``signaling.workflow.precall_verdict``), the
path and figure labels.
"""

from __future__ import annotations

from web.i18n import N_

# What both pages show of a kept check.
RESULT_STRINGS: dict[str, str] = {
    "precall.title": N_("Pre-call check"),
    "precall.verdict.good": N_("Ready for the consultation"),
    "precall.verdict.limited": N_("Usable, with limits"),
    "precall.verdict.unusable": N_("Not usable: fix this first"),
    "precall.reason.camera_unavailable": N_(
        "No usable camera: the others will hear you but not see you"
    ),
    "precall.reason.camera_poor": N_(
        "The camera delivers only %(width)s×%(height)s at %(fps)s frames/s"
    ),
    "precall.reason.microphone_unavailable": N_("No usable microphone: the others cannot hear you"),
    "precall.reason.microphone_silent": N_(
        "The microphone picked up no sound: check that it is plugged in and not muted"
    ),
    "precall.reason.speaker_not_heard": N_(
        "The test tone was not heard: check the speaker or headset and its volume"
    ),
    "precall.reason.speaker_unchecked": N_("The speaker was not checked"),
    "precall.reason.network_unreachable": N_(
        "The server cannot be reached on any path (UDP, TURN over UDP or TCP): "
        "ask the IT department to open the network"
    ),
    "precall.reason.uplink_too_low": N_(
        "Uplink about %(mbit)s Mbit/s: too little for video; use low-bandwidth mode "
        "(voice and a still picture) or another network"
    ),
    "precall.reason.uplink_unusable": N_(
        "Uplink about %(mbit)s Mbit/s: too little even for voice and still pictures; "
        "use another network"
    ),
    "precall.reason.uplink_low": N_(
        "Uplink about %(mbit)s Mbit/s: the others will see a smaller or softer picture"
    ),
    "precall.reason.loss_too_high": N_(
        "Packet loss %(percent)s: speech will break up; use another network"
    ),
    "precall.reason.loss_high": N_("Packet loss %(percent)s: the picture may stutter"),
    "precall.reason.rtt_too_high": N_(
        "Round trip %(ms)s ms: too slow for a conversation; use another network"
    ),
    "precall.reason.rtt_high": N_("Round trip %(ms)s ms: expect delays when talking"),
    "precall.reason.uplink_unmeasured": N_("The uplink could not be measured: run the check again"),
    "precall.reason.loss_unmeasured": N_("Packet loss could not be measured: run the check again"),
    "precall.reason.rtt_unmeasured": N_(
        "The round trip could not be measured: run the check again"
    ),
    "precall.reason.udp_blocked": N_(
        "UDP is blocked: the call goes through TURN over TCP, with more delay"
    ),
    "precall.reason.turn_failed": N_("The TURN relay cannot be reached over %(path)s"),
    "precall.path.direct": N_("Direct (UDP)"),
    "precall.path.turn_udp": N_("TURN over UDP"),
    "precall.path.turn_tcp": N_("TURN over TCP"),
    "precall.path.turn_tls": N_("TURN over TLS"),
    "precall.path.status.ok": N_("Connected"),
    "precall.path.status.failed": N_("No connection"),
    "precall.path.status.not_configured": N_("Not configured"),
    "precall.fig.uplink": N_("Uplink"),
    "precall.fig.loss": N_("Loss"),
    "precall.fig.rtt": N_("Round trip"),
    "precall.fig.status": N_("Status"),
    "precall.fig.camera": N_("Camera"),
    "precall.fig.microphone": N_("Microphone"),
    "precall.fig.speaker": N_("Speaker"),
    "precall.fig.network": N_("Network"),
    "precall.camera.value": N_("%(width)s×%(height)s, %(fps)s frames/s"),
    "precall.device.ok": N_("Working"),
    "precall.device.denied": N_("Access denied"),
    "precall.device.missing": N_("Not found"),
    "precall.device.busy": N_("In use by another program"),
    "precall.device.failed": N_("Failed"),
    "precall.speaker.heard": N_("Test tone heard"),
    "precall.speaker.not_heard": N_("Test tone not heard"),
    "precall.speaker.skipped": N_("Not checked"),
    "precall.checked_by": N_("%(name)s, %(time)s"),
    "precall.none": N_(
        "Nobody has checked their camera, microphone and network for this consultation yet."
    ),
    "precall.run": N_("Pre-call check"),
}

# What only the check page shows while it measures.
PAGE_STRINGS: dict[str, str] = {
    "precall.step.waiting": N_("Waiting"),
    "precall.step.running": N_("Measuring…"),
    "precall.step.done": N_("Done"),
    "precall.saved": N_("The result is kept with the consultation."),
    "precall.save_failed": N_("The result could not be saved."),
    "precall.not_found": N_("This consultation was not found."),
    "precall.lowbw.on": N_(
        "Low-bandwidth mode is on: calls from this computer send voice and one still "
        "picture a second."
    ),
    "precall.lowbw.off": N_("Low-bandwidth mode is off: calls from this computer send video."),
    "precall.lowbw.turn_on": N_("Use low-bandwidth mode in calls"),
    "precall.lowbw.turn_off": N_("Send video in calls again"),
}
