// Shows every <time datetime="…"> of the page in the reader's own time zone on hover.
// The server writes a relative text ("3 minutes ago") and the exact time in UTC as the
// title; this replaces the title with the same moment in local time. Without scripts the
// UTC title stays, which is still right.
(() => {
  "use strict";
  // (dateStyle/timeStyle cannot be combined with timeZoneName: spelled out instead.)
  const format = new Intl.DateTimeFormat(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    timeZoneName: "short",
  });
  document.querySelectorAll("time[datetime]").forEach((element) => {
    const at = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) element.title = format.format(at);
  });
})();
