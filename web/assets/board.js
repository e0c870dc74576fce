// Placeholder board: replaced by the full board (lamps, presence, queue members).
"use strict";
