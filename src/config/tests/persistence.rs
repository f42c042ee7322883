//! The persistence options: Mosquitto's (`persistence`, `persistence_location`, `persistence_file`,
//! `autosave_interval`, `autosave_on_changes`) and shardmq's `persistence_sync`.

use super::*;

#[test]
fn persistence_options_as_mosquitto_reads_them_plus_persistence_sync() {
    // Debian's stock mosquitto.conf.
    let c = ok("persistence true\npersistence_location /var/lib/mosquitto/\n");
    assert!(c.persistence);
    assert_eq!(
        c.persistence_location.as_deref(),
        Some(Path::new("/var/lib/mosquitto/"))
    );
    assert_eq!(c.persistence_file, "mosquitto.db");
    assert_eq!(c.persistence_sync, PersistenceSync::Always);
    assert!(c
        .notices
        .iter()
        .all(|n| n.log_type() != LogType::Warning || matches!(n, ConfigNotice::LocalOnlyMode)));
    let c = ok(
        "retained_persistence 1\npersistence_file m.db\nautosave_interval 60\n\
                autosave_on_changes true\npersistence_sync interval 250\n",
    );
    assert!(c.persistence);
    assert_eq!(c.persistence_file, "m.db");
    assert_eq!((c.autosave_interval, c.autosave_on_changes), (60, true));
    assert_eq!(
        c.persistence_sync,
        PersistenceSync::Interval(Duration::from_millis(250))
    );
    assert_eq!(
        ok("persistence_sync none\n").persistence_sync,
        PersistenceSync::None
    );
    for bad in [
        "persistence_sync sometimes\n",
        "persistence_sync interval\n",
        "persistence_sync interval 0\n",
        "persistence_sync interval x\n",
        "persistence_file a/b.db\n",
        "autosave_interval -1\n",
    ] {
        assert!(
            matches!(err(bad), ConfigError::InvalidValue { .. }),
            "{bad}: {}",
            err(bad)
        );
    }
}
