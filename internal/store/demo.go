package store

// DemoUsers returns the seed's five users (the PHP tutorial's chat_user
// rows 85-89), ready for UpsertUsers. In the seed, visitor 85 ("Love violet
// life") chats with customer-service agent 86 ("大美如斯"); 88 is the other
// agent, 87 and 89 are visitors. Avatars are served at /avatars/<uid>.svg.
func DemoUsers() []User {
	return []User{
		{UID: "85", Nickname: "Love violet life", AvatarURL: "/avatars/85.svg", Role: RoleVisitor},
		{UID: "86", Nickname: "大美如斯", AvatarURL: "/avatars/86.svg", Role: RoleAgent},
		{UID: "87", Nickname: "大金", AvatarURL: "/avatars/87.svg", Role: RoleVisitor},
		{UID: "88", Nickname: "悦悦", AvatarURL: "/avatars/88.svg", Role: RoleAgent},
		{UID: "89", Nickname: "雨薇", AvatarURL: "/avatars/89.svg", Role: RoleVisitor},
	}
}

// DemoCannedReplies returns a few canned replies for the demo agents, in
// Chinese and in English; the all-in-one loads them into an empty list.
func DemoCannedReplies() []CannedReply {
	return []CannedReply{
		{Shortcut: "hello", Body: "您好，很高兴为您服务！请问有什么可以帮您？"},
		{Shortcut: "wait", Body: "请稍等，我帮您查询一下。"},
		{Shortcut: "thanks", Body: "感谢您的耐心等待！"},
		{Shortcut: "bye", Body: "感谢您的咨询，祝您生活愉快！再见。"},
		{Shortcut: "hello-en", Body: "Hello! How can I help you today?"},
		{Shortcut: "wait-en", Body: "One moment please, I'm looking into it."},
	}
}
