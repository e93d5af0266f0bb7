mod batches;
mod cleanup;
mod migrate;
mod revoke_and_list;
mod stats_and_users;
