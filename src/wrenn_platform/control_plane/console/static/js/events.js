// The team's live events (`/v1/events/stream`, server-sent events, the session cookie).
const CAPSULE_KINDS = ["capsule.create", "capsule.pause", "capsule.resume", "capsule.destroy", "capsule.state.changed"];
// Every kind the contract's stream sends (its `connected` sentinel aside).
export const EVENT_KINDS = [...CAPSULE_KINDS, "template.snapshot.create", "template.snapshot.delete", "host.up", "host.down"];

// Calls `onEvent(kind, event)` for each event of `kinds`; returns a function that closes the stream.
export function watchEvents(kinds, onEvent) {
  const source = new EventSource("/v1/events/stream");
  for (const kind of kinds) {
    source.addEventListener(kind, (message) => {
      try {
        onEvent(kind, JSON.parse(message.data));
      } catch (error) {
        console.error("wrenn: unreadable event", kind, error);
      }
    });
  }
  return () => source.close();
}

// Capsule changes: `onCapsule(capsule)` with the event's capsule, or `refetch(id)` when it carries none.
export function watchCapsules(onCapsule, refetch) {
  return watchEvents(CAPSULE_KINDS, (kind, event) => {
    if (event.sandbox && event.sandbox.id) onCapsule(event.sandbox);
    else if (event.resource && event.resource.id) refetch(event.resource.id);
  });
}
