"""How much an uploaded file may cost the server to read: sizes, memory and time.

A file of a few hundred kilobytes can announce (or inflate to) gigabytes. Each
parser checks what a file announces against these limits *before* decoding it,
and all parsing runs in a child process capped at ``memory_bytes`` of address
space and ``timeout`` seconds (``records.sandbox``), so a file that lies about its
sizes still cannot take the server's memory.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Limits:
    """The limits applied to one upload's parsing (defaults suit a 50 MiB upload cap).

    Attributes:
        max_pixels: the most pixels of one picture (a JPEG, a PNG, one DICOM frame).
            100 megapixels holds a 10,000 x 10,000 scan; Pillow warns at 89.5.
        max_decoded_bytes: the most bytes a DICOM file's pixel data may decode to
            (rows x columns x samples x bits allocated x frames).
        max_inflated_bytes: the most bytes a deflated DICOM data set may inflate to.
        max_pdf_pages: the most pages of a PDF.
        memory_bytes: the address-space limit of the parsing child process.
        timeout: seconds the parsing child may take before it is killed.
    """

    max_pixels: int = 100_000_000
    max_decoded_bytes: int = 1024 * MiB
    max_inflated_bytes: int = 128 * MiB
    max_pdf_pages: int = 5000
    memory_bytes: int = 1536 * MiB
    timeout: float = 60.0
