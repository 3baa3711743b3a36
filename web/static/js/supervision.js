// Supervision export page: a server-rendered form and download links; only the
// shared header behaviour runs here.
import "./ui.js";
