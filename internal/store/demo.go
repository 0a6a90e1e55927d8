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
