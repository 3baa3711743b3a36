// Plain home page: only the shared header behaviour.
import "./ui.js";
