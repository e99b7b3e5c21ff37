"""The mission document's three mapping examples (../shared/SEED_EXAMPLES.md), as data."""

TRACK_API = {
    "api_type": "track",
    "property_columns": "blocked,created_at,name",
    "event_column": "identities.connection",
    "identity_column": "email",
    "timestamp_column": "updated_at",
}
TRACK_RECORD = {
    "blocked": False,
    "created_at": "2022-10-21T04:09:54.622Z",
    "email": "evalyn_shields@hotmail.com",
    "email_verified": False,
    "family_name": "Brakus",
    "given_name": "Camden",
    "identities": {
        "user_id": "0a12757f-4b19-4e93-969e-c3a2e98fe82b",
        "connection": "Username-Password-Authentication",
        "provider": "auth0",
        "isSocial": False,
    },
    "name": "Jordan Yost",
    "nickname": "Elroy",
    "updated_at": "2022-10-21T04:09:54.622Z",
    "user_id": "auth0|0a12757f-4b19-4e93-969e-c3a2e98fe82b",
}
TRACK_ITEM = {
    "identity": "evalyn_shields@hotmail.com",
    "event": "Username-Password-Authentication",
    "timestamp": "2022-10-21T04:09:54.622Z",
    "properties": {"blocked": "false", "created_at": "2022-10-21T04:09:54.622Z", "name": "Jordan Yost"},
}

USER_API = {
    "api_type": "add_user_properties",
    "property_columns": "identities_provider,created_at,nickname",
    "identity_column": "user_id",
}
USER_RECORD = {
    "blocked": False,
    "created_at": "2022-10-21T04:09:59.328Z",
    "email": "marielle.murazik8@hotmail.com",
    "email_verified": False,
    "family_name": "Gutkowski",
    "given_name": "Alysha",
    "identities": {
        "user_id": "26d8952b-2e1e-4b79-b2aa-e363f062701a",
        "connection": "Username-Password-Authentication",
        "provider": "auth0",
        "isSocial": False,
    },
    "name": "Lynn Crooks",
    "nickname": "Noe",
    "updated_at": "2022-10-21T04:09:59.328Z",
    "user_id": "auth0|26d8952b-2e1e-4b79-b2aa-e363f062701a",
}
USER_ITEM = {
    "identity": "auth0|26d8952b-2e1e-4b79-b2aa-e363f062701a",
    "properties": {"identities_provider": "auth0", "created_at": "2022-10-21T04:09:59.328Z", "nickname": "Noe"},
}

ACCOUNT_API = {
    "api_type": "add_account_properties",
    "property_columns": "family_name,email_verified,blocked",
    "account_id_column": "identities.user_id",
}
ACCOUNT_RECORD = {
    "blocked": False,
    "created_at": "2022-10-21T04:08:53.393Z",
    "email": "nedra14@hotmail.com",
    "email_verified": False,
    "family_name": "Tillman",
    "given_name": "Jacinto",
    "identities": {
        "user_id": "815ff3c3-84fa-4f63-b959-ac2d11efc63c",
        "connection": "Username-Password-Authentication",
        "provider": "auth0",
        "isSocial": False,
    },
    "name": "Lola Conn",
    "nickname": "Kenyatta",
    "updated_at": "2022-10-21T04:08:53.393Z",
    "user_id": "auth0|815ff3c3-84fa-4f63-b959-ac2d11efc63c",
}
ACCOUNT_ITEM = {
    "account_id": "815ff3c3-84fa-4f63-b959-ac2d11efc63c",
    "properties": {"family_name": "Tillman", "email_verified": "false", "blocked": "false"},
}

SEEDS = [
    (TRACK_API, TRACK_RECORD, TRACK_ITEM),
    (USER_API, USER_RECORD, USER_ITEM),
    (ACCOUNT_API, ACCOUNT_RECORD, ACCOUNT_ITEM),
]
