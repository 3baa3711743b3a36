"""What the call and consultation pages' scripts show, beyond every page's strings.

Kept out of ``web/pages.py`` (the handlers) so that each page's JSON carries only
its own strings and the handlers stay readable; ``web/precall_strings.py`` holds
the pre-call check's.
"""

from __future__ import annotations

from web.i18n import N_

# What only the call page's scripts show (kept out of every other page's JSON).
CALL_STRINGS: dict[str, str] = {
    "call.state.connecting": N_("Connecting…"),
    "call.state.waiting": N_("Waiting for the other side to join…"),
    "call.state.live": N_("Consultation in session"),
    "call.state.reconnecting": N_("Connection to the server lost; reconnecting…"),
    "call.state.ended": N_("The consultation call has ended."),
    "call.state.left": N_("You left the call."),
    "call.state.failed": N_("You cannot join this call."),
    "call.peer.connecting": N_("Connecting…"),
    "call.peer.reconnecting": N_("Reconnecting…"),
    "call.peer.no_video": N_("No video"),
    "call.you": N_("You"),
    "call.mic_off": N_("Microphone off"),
    "call.camera_off": N_("Camera off"),
    "call.audio_only": N_("Audio only"),
    "call.mic.on": N_("Mute"),
    "call.mic.off": N_("Unmute"),
    "call.camera.on": N_("Stop camera"),
    "call.camera.off": N_("Start camera"),
    "call.audio_only.on": N_("Audio only"),
    "call.audio_only.off": N_("Back to video"),
    "call.media.camera_denied": N_(
        "Camera access was denied: the others hear you but cannot see you. "
        "Allow the camera in the browser's site settings and rejoin to be seen."
    ),
    "call.media.camera_missing": N_("No camera was found: the call goes on with your voice only."),
    "call.media.mic_denied": N_(
        "Microphone access was denied: the others cannot hear you. Use the chat, "
        "or allow the microphone in the browser's site settings and rejoin."
    ),
    "call.media.mic_missing": N_("No microphone was found: the others cannot hear you."),
    "call.media.none": N_(
        "No camera or microphone can be used: you see and hear the others and can "
        "write in the chat."
    ),
    "call.media.busy": N_(
        "The camera or microphone is used by another program; close it and rejoin."
    ),
    "call.quality.good": N_("Good connection"),
    "call.quality.fair": N_("Fair connection"),
    "call.quality.poor": N_("Poor connection"),
    "call.quality.unknown": N_("Measuring the connection…"),
    "call.stat.rtt": N_("Round trip"),
    "call.stat.loss": N_("Packet loss"),
    "call.stat.bitrate": N_("Receiving"),
    "call.stat.path": N_("Path"),
    "call.path.relay": N_("relayed (TURN)"),
    "call.path.direct": N_("direct"),
    "call.chat.pending": N_("waiting for the connection"),
    "call.chat.sending": N_("sending…"),
    "call.chat.not_stored": N_("not saved to the record"),
    "call.chat.retry": N_("Send again"),
    "call.event.joined": N_("%(name)s joined"),
    "call.event.rejoined": N_("%(name)s reconnected"),
    "call.event.left": N_("%(name)s left"),
    "call.event.live": N_("The consultation is in session"),
    "call.event.ended": N_("%(name)s ended the call"),
    "call.event.invited": N_("%(name)s invited another doctor"),
    "call.event.recording_interrupted": N_("%(name)s is not being recorded: the recording stopped"),
    "call.confirm.end": N_("End the consultation call for everyone?"),
    "call.error.not_participant": N_("You are not a participant of this consultation."),
    "call.error.not_joinable": N_(
        "This consultation cannot be joined now: it is not accepted yet, or already over."
    ),
    "call.error.consent_required": N_(
        "The patient's consent must be recorded before the call can start."
    ),
    "call.error.already_in_call": N_("You are already in this call in another window or tab."),
    "call.error.call_full": N_("The call is full (at most four participants)."),
    "call.error.not_found": N_("This consultation was not found."),
    "call.error.session": N_("Your session has ended. Please sign in again."),
    "call.rec.recording": N_("Recording"),
    "call.rec.starting": N_("Starting the recording…"),
    "call.rec.failed": N_("Recording is not running; the call goes on."),
    # Why it stopped, when the server says (its leg stays up: the call goes on).
    "call.rec.disk_full": N_(
        "Recording stopped: the server's recording disk is full. The call goes on;"
        " recording resumes by itself when there is room."
    ),
    "call.rec.write_failed": N_(
        "Recording stopped: the server could not write the recording. The call goes on;"
        " recording resumes by itself when it can."
    ),
    "call.rec.not_consented": N_("Not recorded: the patient did not consent to recording."),
    "call.rec.off": N_("This call is not recorded."),
    "call.rec.others": N_("Recorded participants: %(count)s"),
    "call.rec.ended": N_("The recording has ended."),
    "call.rec.unknown": N_("Recording status unknown while reconnecting…"),
    "call.rec.not_recorded": N_("Not being recorded"),
    # Weak networks (uplink.js).
    "call.uplink.title": N_("Your uplink"),
    "call.uplink.sending": N_("Sending"),
    "call.uplink.auto": N_(
        "Your connection cannot carry video now: the others hear you and see a still "
        "picture of you every second. Video comes back when the connection recovers."
    ),
    "call.uplink.manual": N_(
        "Low bandwidth: the others hear you and see a still picture of you every second."
    ),
    "call.low_bandwidth.on": N_("Low bandwidth"),
    "call.low_bandwidth.off": N_("Normal video"),
    "call.low_bandwidth.hint": N_(
        "For a weak connection: keeps your voice and sends a still picture every second"
    ),
}

# What the records panel (records.js) shows, on the call and the consultation page.
RECORDS_STRINGS: dict[str, str] = {
    "records.kind.pdf": N_("PDF"),
    "records.kind.jpeg": N_("Image"),
    "records.kind.png": N_("Image"),
    "records.kind.dicom": N_("DICOM image"),
    "records.kind.text": N_("Text report"),
    "records.empty": N_("No documents are attached to this consultation yet."),
    "records.loading": N_("Loading…"),
    "records.page": N_("Page %(page)s of %(pages)s"),
    "records.pages": N_("%(pages)s pages"),
    "records.download": N_("Download"),
    "records.show": N_("Show to all"),
    "records.showing": N_("Showing to all"),
    "records.shown_by": N_("%(name)s is showing: %(title)s, page %(page)s"),
    "records.shown_by_single": N_("%(name)s is showing: %(title)s"),
    "records.shown_by_frame": N_("%(name)s is showing: %(title)s, frame %(frame)s"),
    "records.frames": N_("%(frames)s frames"),
    "records.someone": N_("Another participant"),
    "records.uploaded_by": N_("%(name)s, %(time)s"),
    "records.open_failed": N_("This document could not be opened."),
    "records.no_preview": N_(
        "No preview of this DICOM file can be shown (no pixel data, or a compression "
        "the server cannot decode). Download it to view it in a DICOM viewer."
    ),
    "records.dicom.modality": N_("Modality"),
    "records.dicom.study_date": N_("Study date"),
    "records.dicom.body_part": N_("Body part"),
    "records.dicom.size": N_("Image size"),
    "records.dicom.frames": N_("Frames"),
    "records.uploading": N_("Uploading %(name)s… %(percent)s"),
    "records.uploaded": N_("Document uploaded."),
    "records.summary.conditions": N_("Diagnoses"),
    "records.summary.medications": N_("Medications"),
    "records.summary.allergies": N_("Allergies"),
    "records.summary.vitals": N_("Vital signs"),
    "records.summary.labs": N_("Laboratory results"),
    "records.summary.none": N_("None recorded."),
    "records.summary.other": N_("Other observations"),
    "records.summary.immunizations": N_("Immunizations"),
    "records.summary.procedures": N_("Procedures"),
    "records.status.preparation": N_("In preparation"),
    "records.status.in-progress": N_("In progress"),
    "records.summary.withdrawn": N_(
        "Not shown: %(count)s that the source marked entered in error, refuted, "
        "cancelled or not done."
    ),
    "records.status.active": N_("Active"),
    "records.status.recurrence": N_("Recurrence"),
    "records.status.relapse": N_("Relapse"),
    "records.status.inactive": N_("Inactive"),
    "records.status.remission": N_("In remission"),
    "records.status.resolved": N_("Resolved"),
    "records.status.unconfirmed": N_("Unconfirmed"),
    "records.status.provisional": N_("Provisional"),
    "records.status.differential": N_("Differential"),
    "records.status.completed": N_("Completed"),
    "records.status.intended": N_("Intended"),
    "records.status.stopped": N_("Stopped"),
    "records.status.on-hold": N_("On hold"),
    "records.status.unknown": N_("Status unknown"),
    "records.status.registered": N_("Registered, no result yet"),
    "records.status.preliminary": N_("Preliminary"),
    "records.status.amended": N_("Amended"),
    "records.status.corrected": N_("Corrected"),
    "records.summary.empty": N_(
        "No structured records were imported for this patient (diagnoses, "
        "medications, allergies, vital signs, laboratory results)."
    ),
    "records.summary.failed": N_("The summary could not be loaded."),
    "records.col.item": N_("Item"),
    "records.col.value": N_("Result"),
    "records.col.range": N_("Reference range"),
    "records.flag.H": N_("High"),
    "records.flag.L": N_("Low"),
    "records.allergy.high": N_("High risk"),
    "records.since": N_("since %(date)s"),
    # the DICOM viewer (dicomview.js)
    "dicom.frame": N_("Frame %(frame)s of %(frames)s"),
    "dicom.window": N_("Window"),
    "dicom.window_values": N_("Centre %(center)s · width %(width)s"),
    "dicom.preset.file": N_("As acquired"),
    "dicom.preset.full": N_("Full range"),
    "dicom.preset.brain": N_("Brain (40/80)"),
    "dicom.preset.soft": N_("Soft tissue (40/400)"),
    "dicom.preset.lung": N_("Lung (−600/1500)"),
    "dicom.preset.bone": N_("Bone (400/1800)"),
    "dicom.preset.custom": N_("Adjusted"),
    "dicom.reset": N_("Reset"),
    "dicom.previous": N_("Previous frame"),
    "dicom.next": N_("Next frame"),
    "dicom.hint": N_("Scroll or ↑ ↓ for frames · drag on the image for the window"),
    "dicom.failed": N_("This image cannot be shown here; download the file to open it."),
    "dicom.from_pacs": N_("From the regional PACS, study of %(date)s"),
    # the regional PACS (records.js)
    "pacs.searching": N_("Searching the regional PACS…"),
    "pacs.counts": N_("Series: %(series)s · images: %(instances)s"),
    "pacs.attach": N_("Attach"),
    "pacs.attaching": N_("Attaching…"),
    "pacs.attached": N_("Attached"),
    "pacs.done": N_("Study attached: %(count)s image(s) added to the record."),
    "pacs.already": N_("This study is already attached."),
    "pacs.no_description": N_("(no description)"),
    "pacs.by_name": N_(
        "Found by name and birth date, not by ID number: check that it is this patient."
    ),
}

# What only the consultation page's script shows.
CONSULTATION_STRINGS: dict[str, str] = {
    "cons.event.document_shared_title": N_("%(name)s attached %(title)s"),
    "cons.event.other": N_("%(kind)s"),
    "cons.system": N_("System"),
    "cons.page_suffix": N_("page %(page)s"),
    "cons.frame_suffix": N_("frame %(frame)s"),
    "cons.opinion.findings": N_("Findings"),
    "cons.opinion.impression": N_("Impression"),
    "cons.opinion.recommendations": N_("Recommendations"),
    "cons.opinion.notes": N_("Notes"),
    "cons.referral.reason": N_("Reason for the in-person visit"),
    "cons.referral.department": N_("Department to visit"),
    "cons.signed_by": N_("Signed by %(name)s, %(time)s"),
    "cons.sha": N_("SHA-256 %(hash)s"),
    "cons.kind.opinion": N_("Consultation opinion"),
    "cons.kind.referral": N_("Referral to an in-person visit"),
    "cons.kind.addendum": N_("Addendum"),
    "cons.wait.before": N_("The opinion is written after the video call."),
    "cons.wait.ended": N_("Waiting for the specialist's signed opinion."),
    "cons.wait.closed": N_("This consultation did not take place; there is no opinion."),
    "cons.done.signed": N_("Opinion signed."),
    "cons.done.referred": N_("Referral signed."),
    "cons.done.addendum": N_("Addendum signed."),
    "cons.not_found": N_("This consultation was not found."),
}
