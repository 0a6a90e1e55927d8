// Package desk is the customer-service desk on top of the chat: visitors
// (from the embeddable widget) write to "the desk", and the desk gives each
// visitor's conversation to an agent (from the agent console).
//
// A Desk is a chat.Extension: the chat Handler passes it every "desk.*"
// request. The role of a connection is its bound uid's: users with role
// agent are agents, every other uid is a visitor. Visitors send desk.hello,
// desk.say, desk.history, desk.read, desk.typing and desk.email; agents
// also desk.presence, desk.list, desk.claim, desk.transfer, desk.close,
// desk.agents and the canned-reply requests. docs/desk-protocol.md
// documents every frame with an example.
//
// Assignment happens on a visitor's message while nobody serves the
// conversation: the visitor's last agent if online with room, else the
// online agent with the fewest open conversations under the cap, else the
// queue, drained oldest first as agents come online or close
// conversations. The store makes each assignment atomic (store.DeskStore).
// Presence: agents switch online / away / offline; Run sets an agent
// offline once Grace passed without any of their connections, and a
// reconnect within Grace changes nothing. Typing indicators are relayed,
// throttled, and never stored. System lines (assigned, transferred, closed)
// are stored messages of kind 3 whose text is a code with parameters.
//
// A Desk holds no per-connection state (only caches), so every worker of a
// cluster runs one on the shared store.
package desk
