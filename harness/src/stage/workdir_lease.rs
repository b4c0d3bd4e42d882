//! One target folder, many harnesses: an install step (`npm ci` wipes and
//! refills `node_modules`) must not run while another harness installs in
//! the same folder or runs instances from it. An advisory lock on the folder
//! itself says so: exclusive while installing, shared while a run's
//! instances use what was installed. The kernel drops it when the harness
//! dies, so a killed harness never leaves the folder locked.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use super::StageError;

/// A run's hold on a target folder: while it lives, no other harness
/// installs there. Dropped with the stack, after its instances.
#[derive(Debug)]
pub struct WorkdirLease {
    _folder: File,
}

/// What a lock holder is doing with the folder.
#[derive(Clone, Copy, Debug)]
enum Hold {
    /// Installing: nobody else may install or run from the folder.
    Install,
    /// Running instances: others may run too, but not install.
    Run,
}

/// Takes `hold` on `dir`, waiting (and saying so once on stderr) while
/// another harness holds a conflicting lock. Blocking: call it off the
/// async threads.
fn take(folder: &File, dir: &Path, hold: Hold) -> Result<(), StageError> {
    let tried = match hold {
        Hold::Install => folder.try_lock(),
        Hold::Run => folder.try_lock_shared(),
    };
    let locking = || format!("locking {}", dir.display());
    match tried {
        Ok(()) => Ok(()),
        Err(TryLockError::Error(e)) => Err(StageError::io(locking())(e)),
        Err(TryLockError::WouldBlock) => {
            eprintln!(
                "waiting: another harness is {} {}",
                match hold {
                    Hold::Install => "installing in or running instances from",
                    Hold::Run => "installing in",
                },
                dir.display()
            );
            match hold {
                Hold::Install => folder.lock(),
                Hold::Run => folder.lock_shared(),
            }
            .map_err(StageError::io(locking()))
        }
    }
}

/// Runs `install` under an exclusive lock on `dir`, then holds it shared
/// for the run. Between the two another harness may install (it waits for
/// no run then); this one's shared lock waits until that install is done,
/// so its instances still start from a whole install.
pub async fn install_then_hold<F>(dir: &Path, install: F) -> Result<WorkdirLease, StageError>
where
    F: Future<Output = Result<(), StageError>>,
{
    let folder = open(dir)?;
    let folder = locked(folder, dir.to_owned(), Hold::Install).await?;
    install.await?;
    folder
        .unlock()
        .map_err(StageError::io(format!("unlocking {}", dir.display())))?;
    let folder = locked(folder, dir.to_owned(), Hold::Run).await?;
    Ok(WorkdirLease { _folder: folder })
}

fn open(dir: &Path) -> Result<File, StageError> {
    File::open(dir).map_err(StageError::io(format!("opening {}", dir.display())))
}

async fn locked(folder: File, dir: PathBuf, hold: Hold) -> Result<File, StageError> {
    tokio::task::spawn_blocking(move || take(&folder, &dir, hold).map(|()| folder))
        .await
        .map_err(|e| StageError::NotAvailable(format!("locking a target folder: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// An install that counts how many installs run at once.
    async fn counted_install(
        busy: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    ) -> Result<(), StageError> {
        let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        busy.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }

    #[tokio::test]
    async fn two_installs_in_one_folder_take_turns() {
        let dir = tempfile::tempdir().expect("dir");
        let (busy, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // Each install's lease is dropped at once: only the installs overlap in time.
        let first = install_then_hold(dir.path(), counted_install(busy.clone(), most.clone()));
        let second = async {
            let lease =
                install_then_hold(dir.path(), counted_install(busy.clone(), most.clone())).await;
            drop(lease);
        };
        let (first, ()) = tokio::join!(async { first.await.map(drop) }, second);
        first.expect("first install");
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "the installs never overlapped"
        );
    }

    #[tokio::test]
    async fn an_install_waits_until_a_run_from_the_folder_ends() {
        let dir = tempfile::tempdir().expect("dir");
        let running = install_then_hold(dir.path(), async { Ok(()) })
            .await
            .expect("first run holds the folder");
        let installed = Arc::new(AtomicUsize::new(0));
        let counter = installed.clone();
        let path = dir.path().to_owned();
        let second = tokio::spawn(async move {
            install_then_hold(&path, async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            installed.load(Ordering::SeqCst),
            0,
            "no install under a running harness"
        );
        drop(running);
        let lease = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the install goes on once the run ended")
            .expect("task")
            .expect("lease");
        assert_eq!(installed.load(Ordering::SeqCst), 1);
        drop(lease);
    }

    #[tokio::test]
    async fn runs_share_the_folder() {
        let dir = tempfile::tempdir().expect("dir");
        let first = install_then_hold(dir.path(), async { Ok(()) })
            .await
            .expect("first");
        // Another run's hold, as it takes after its own install, does not wait for this one.
        let folder = open(dir.path()).expect("open");
        let folder = tokio::time::timeout(
            Duration::from_secs(2),
            locked(folder, dir.path().to_owned(), Hold::Run),
        )
        .await
        .expect("a second run does not wait")
        .expect("shared lock");
        drop((first, folder));
    }

    #[tokio::test]
    async fn a_failed_install_releases_the_folder() {
        let dir = tempfile::tempdir().expect("dir");
        let failed = install_then_hold(dir.path(), async {
            Err(StageError::NotAvailable("npm is not there".into()))
        })
        .await;
        assert!(failed.is_err());
        let again = tokio::time::timeout(
            Duration::from_secs(2),
            install_then_hold(dir.path(), async { Ok(()) }),
        )
        .await
        .expect("not left locked");
        again.expect("lease");
    }
}
