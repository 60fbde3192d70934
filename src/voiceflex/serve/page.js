// voiceflex serve: plays a routine in the page's <audio> element, chapters as buttons,
// the current chapter highlighted and shown on the lock screen (Media Session).
"use strict";
(function () {
  const routines = JSON.parse(document.getElementById("data").textContent);
  const byId = new Map(routines.map((r) => [r.id, r]));
  const audio = document.getElementById("audio");
  const player = document.getElementById("player");
  const nowTitle = document.getElementById("now-title");
  const nowChapter = document.getElementById("now-chapter");
  const session = "mediaSession" in navigator ? navigator.mediaSession : null;
  const RESTART_S = 3; // "previous" within this of a chapter's start goes to the chapter before
  let current = null;
  let chapter = -1;

  function card(r) { return document.getElementById("r-" + r.id); }

  function load(r) {
    if (current === r) return;
    if (current) card(current).classList.remove("playing");
    current = r;
    chapter = -1;
    audio.src = r.mp3;
    player.hidden = false;
    card(r).classList.add("playing");
    nowTitle.textContent = r.title;
    show(0);
  }

  function seek(seconds) {
    // Before the metadata has loaded the element cannot seek yet: seek once it has.
    if (audio.readyState >= 1) audio.currentTime = seconds;
    else audio.addEventListener("loadedmetadata", () => { audio.currentTime = seconds; }, { once: true });
    show(seconds);
  }

  function play(r, seconds) {
    load(r);
    if (seconds !== undefined) seek(seconds);
    audio.play().catch(() => {}); // refused without a tap: the controls stay there
  }

  function chapterAt(seconds) {
    if (!current) return -1;
    let found = 0;
    current.chapters.forEach((c, i) => { if (c.start <= seconds + 0.05) found = i; });
    return found;
  }

  function show(seconds) {
    const index = chapterAt(seconds);
    if (index === chapter || !current) return;
    chapter = index;
    document.querySelectorAll(".chapter.current").forEach((b) => {
      b.classList.remove("current");
      b.removeAttribute("aria-current");
    });
    const button = card(current).querySelector(`.chapter[data-index="${index}"]`);
    if (button) {
      button.classList.add("current");
      button.setAttribute("aria-current", "true");
    }
    const c = current.chapters[index];
    nowChapter.textContent = c && c.title !== current.title ? "· " + c.title : "";
    if (session && window.MediaMetadata) {
      session.metadata = new MediaMetadata({
        title: c ? c.title : current.title,
        artist: current.title,
        album: "voiceflex",
        artwork: [{ src: new URL(current.cover, location.href).href, sizes: "600x600", type: "image/png" }],
      });
    }
  }

  function step(by) {
    if (!current) return;
    const t = audio.currentTime;
    let index = chapterAt(t);
    if (by < 0 && t - current.chapters[index].start > RESTART_S) by = 0;
    index = Math.min(Math.max(index + by, 0), current.chapters.length - 1);
    seek(current.chapters[index].start);
  }

  document.addEventListener("click", (event) => {
    const target = event.target.closest("button[data-id]");
    if (!target) return;
    const r = byId.get(target.dataset.id);
    if (target.classList.contains("chapter")) {
      play(r, r.chapters[Number(target.dataset.index)].start);
    } else if (current === r && !audio.paused) {
      audio.pause();
    } else {
      play(r);
    }
  });

  audio.addEventListener("timeupdate", () => {
    show(audio.currentTime);
    if (session && session.setPositionState && isFinite(audio.duration)) {
      try {
        session.setPositionState({ duration: audio.duration, playbackRate: audio.playbackRate,
                                   position: Math.min(audio.currentTime, audio.duration) });
      } catch (e) { /* a browser that refuses the state keeps its own */ }
    }
  });
  const label = () => {
    document.querySelectorAll(".play").forEach((b) => {
      b.textContent = current && b.dataset.id === current.id && !audio.paused ? "Pause" : "Play";
    });
  };
  audio.addEventListener("play", label);
  audio.addEventListener("pause", label);

  if (session) {
    const handlers = {
      play: () => audio.play(),
      pause: () => audio.pause(),
      nexttrack: () => step(1),
      previoustrack: () => step(-1),
      seekbackward: (d) => seek(Math.max(audio.currentTime - (d.seekOffset || 10), 0)),
      seekforward: (d) => seek(audio.currentTime + (d.seekOffset || 10)),
      seekto: (d) => seek(d.seekTime),
    };
    for (const [action, handler] of Object.entries(handlers)) {
      try { session.setActionHandler(action, handler); } catch (e) { /* not offered here */ }
    }
  }
  // For tests and for the curious: the state the page plays.
  window.voiceflex = { routines, get current() { return current; }, get chapter() { return chapter; }, step };
})();
