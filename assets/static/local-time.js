// Shows every <time datetime="…"> of the page in the reader's own time zone on hover.
// The server writes a relative text ("3 minutes ago") and the exact time in UTC as the
// title; this replaces the title with the same moment in local time. Without scripts the
// UTC title stays, which is still right.
(() => {
  "use strict";
  const format = new Intl.DateTimeFormat(undefined, {
    dateStyle: "medium",
    timeStyle: "medium",
    timeZoneName: "short",
  });
  document.querySelectorAll("time[datetime]").forEach((element) => {
    const at = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) element.title = format.format(at);
  });
})();
