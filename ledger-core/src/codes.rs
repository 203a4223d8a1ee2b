//! Standard codes (PROTOCOL.md §4): purposes of use, data categories, actions and roles.
//!
//! Typed enums, never free strings. JSON shows the standard code; the canonical encoding uses
//! the variant's position (a varint), so **variants are only ever appended**, never reordered:
//! `codes_are_pinned` fails if a position moves.

use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A closed code list with a code system.
pub trait Code: Copy + Eq + Ord + Sized + 'static {
    /// Every value, in canonical (encoding) order.
    const ALL: &'static [Self];
    /// The standard code, e.g. `TREAT`.
    fn code(self) -> &'static str;
    /// The code system URI.
    fn system(self) -> &'static str;
    /// Position in [`Code::ALL`] (its bit in a [`CodeSet`]).
    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|c| *c == self)
            .expect("every code is in ALL")
    }
    /// Parses the standard code (case-sensitive, as the code systems define them).
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == s)
    }
}

/// HL7 v3 ActReason codes used for PurposeOfUse.
pub const PURPOSE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// FHIR observation-category codes.
pub const OBSERVATION_CATEGORY_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/observation-category";
/// HL7 v3 ActCode (sensitivity / security labels).
pub const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// FHIR consent action codes.
pub const CONSENT_ACTION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
/// Twinledger's own role codes (the roles an organisation enrols actors with).
pub const ROLE_SYSTEM: &str = "https://twinledger.example/CodeSystem/actor-role";

/// Declares a code enum: variants with their standard code and system, in canonical order.
macro_rules! code_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = ($code:literal, $sys:expr)),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $code)] $var,)+
        }
        impl Code for $name {
            const ALL: &'static [Self] = &[$(Self::$var),+];
            fn code(self) -> &'static str {
                match self { $(Self::$var => $code),+ }
            }
            fn system(self) -> &'static str {
                match self { $(Self::$var => $sys),+ }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
        impl std::str::FromStr for $name {
            type Err = UnknownCode;
            fn from_str(s: &str) -> Result<Self, UnknownCode> {
                <Self as Code>::parse(s).ok_or_else(|| UnknownCode {
                    kind: stringify!($name),
                    got: s.chars().take(40).collect(),
                    known: Self::ALL.iter().map(|c| c.code()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    };
}

/// A code that is not in the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} code {got:?}; known codes: {known}")]
pub struct UnknownCode {
    /// The code list.
    pub kind: &'static str,
    /// What was given.
    pub got: String,
    /// The valid codes.
    pub known: String,
}

code_enum!(
    /// Why data is accessed: HL7 v3 PurposeOfUse (ActReason) codes.
    Purpose {
        /// Treatment.
        Treat = ("TREAT", PURPOSE_SYSTEM),
        /// Emergency treatment: the break-glass purpose.
        EmergencyTreat = ("ETREAT", PURPOSE_SYSTEM),
        /// Healthcare research.
        Research = ("HRESCH", PURPOSE_SYSTEM),
        /// Clinical trial research.
        ClinicalTrial = ("CLINTRCH", PURPOSE_SYSTEM),
        /// Healthcare payment.
        Payment = ("HPAYMT", PURPOSE_SYSTEM),
        /// Healthcare operations.
        Operations = ("HOPERAT", PURPOSE_SYSTEM),
        /// Public health.
        PublicHealth = ("PUBHLTH", PURPOSE_SYSTEM),
        /// Patient requested.
        PatientRequest = ("PATRQT", PURPOSE_SYSTEM),
        /// Family requested.
        FamilyRequest = ("FAMRQT", PURPOSE_SYSTEM),
        /// Power of attorney.
        PowerOfAttorney = ("PWATRNY", PURPOSE_SYSTEM),
        /// Care coordination.
        CareCoordination = ("COC", PURPOSE_SYSTEM),
        /// Health system administration.
        SystemAdmin = ("HSYSADMIN", PURPOSE_SYSTEM),
    }
);

code_enum!(
    /// What part of a twin is touched: FHIR observation categories and HL7 sensitivity codes.
    DataCategory {
        /// Vital signs (heart rate, blood pressure, wearable vitals).
        VitalSigns = ("vital-signs", OBSERVATION_CATEGORY_SYSTEM),
        /// Laboratory results.
        Laboratory = ("laboratory", OBSERVATION_CATEGORY_SYSTEM),
        /// Imaging.
        Imaging = ("imaging", OBSERVATION_CATEGORY_SYSTEM),
        /// Physical activity (wearables).
        Activity = ("activity", OBSERVATION_CATEGORY_SYSTEM),
        /// Social history.
        SocialHistory = ("social-history", OBSERVATION_CATEGORY_SYSTEM),
        /// Physical exam.
        Exam = ("exam", OBSERVATION_CATEGORY_SYSTEM),
        /// Procedures.
        Procedure = ("procedure", OBSERVATION_CATEGORY_SYSTEM),
        /// Surveys and questionnaires.
        Survey = ("survey", OBSERVATION_CATEGORY_SYSTEM),
        /// Therapy.
        Therapy = ("therapy", OBSERVATION_CATEGORY_SYSTEM),
        /// Genetic information (security label GDIS): the genome.
        Genetic = ("GDIS", ACT_CODE_SYSTEM),
        /// Mental health information (security label MH).
        MentalHealth = ("MH", ACT_CODE_SYSTEM),
        /// Psychiatry disorder information (security label PSY).
        Psychiatry = ("PSY", ACT_CODE_SYSTEM),
        /// Substance use disorder information (security label SUD).
        SubstanceUse = ("SUD", ACT_CODE_SYSTEM),
        /// HIV/AIDS information (security label HIV).
        Hiv = ("HIV", ACT_CODE_SYSTEM),
        /// Sexuality and reproductive health information (security label SEX).
        Sexuality = ("SEX", ACT_CODE_SYSTEM),
    }
);

code_enum!(
    /// What is done with the data: FHIR consent action codes.
    Action {
        /// Read / view (`access`).
        Read = ("access", CONSENT_ACTION_SYSTEM),
        /// Update / correct (`correct`).
        Update = ("correct", CONSENT_ACTION_SYSTEM),
        /// Use in processing, e.g. a model run (`use`).
        Use = ("use", CONSENT_ACTION_SYSTEM),
        /// Disclose to a third party, e.g. an export (`disclose`).
        Disclose = ("disclose", CONSENT_ACTION_SYSTEM),
        /// Collect new data into the twin (`collect`).
        Collect = ("collect", CONSENT_ACTION_SYSTEM),
    }
);

code_enum!(
    /// The role an organisation enrols an actor with.
    Role {
        /// Physician.
        Physician = ("physician", ROLE_SYSTEM),
        /// Nurse.
        Nurse = ("nurse", ROLE_SYSTEM),
        /// Paramedic / emergency staff.
        Paramedic = ("paramedic", ROLE_SYSTEM),
        /// Pharmacist.
        Pharmacist = ("pharmacist", ROLE_SYSTEM),
        /// Researcher.
        Researcher = ("researcher", ROLE_SYSTEM),
        /// Laboratory technician.
        LabTechnician = ("lab-technician", ROLE_SYSTEM),
        /// Care coordinator.
        CareCoordinator = ("care-coordinator", ROLE_SYSTEM),
        /// A device (a wearable gateway).
        Device = ("device", ROLE_SYSTEM),
        /// A service (the twin store, a model pipeline).
        Service = ("service", ROLE_SYSTEM),
        /// Privacy officer: signs off break-glass reviews.
        PrivacyOfficer = ("privacy-officer", ROLE_SYSTEM),
    }
);

impl Role {
    /// Roles that may use break-glass (emergency) access.
    pub fn may_break_glass(self) -> bool {
        matches!(self, Role::Physician | Role::Nurse | Role::Paramedic)
    }
}

/// A set of codes, as a bit set over [`Code::ALL`] positions. Binary: a varint of the bits
/// (so it is canonical by construction: no order, no duplicates); JSON: a list of codes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CodeSet<T: Code> {
    bits: u64,
    _t: PhantomData<T>,
}

impl<T: Code> Default for CodeSet<T> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<T: Code> CodeSet<T> {
    /// No codes.
    pub const EMPTY: Self = Self {
        bits: 0,
        _t: PhantomData,
    };

    fn all_bits() -> u64 {
        if T::ALL.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << T::ALL.len()) - 1
        }
    }

    /// From raw bits; refuses bits that name no code.
    pub fn from_bits(bits: u64) -> Option<Self> {
        (bits & !Self::all_bits() == 0).then_some(Self {
            bits,
            _t: PhantomData,
        })
    }
    /// The raw bits.
    pub fn bits(self) -> u64 {
        self.bits
    }
    /// Adds a code.
    pub fn with(mut self, c: T) -> Self {
        self.bits |= 1 << c.index();
        self
    }
    /// Whether the set holds `c`.
    pub fn contains(self, c: T) -> bool {
        self.bits & (1 << c.index()) != 0
    }
    /// Whether every code of `self` is in `other`.
    pub fn is_subset(self, other: Self) -> bool {
        self.bits & !other.bits == 0
    }
    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.bits == 0
    }
    /// The codes in canonical order.
    pub fn iter(self) -> impl Iterator<Item = T> {
        T::ALL.iter().copied().filter(move |c| self.contains(*c))
    }
    /// Every code.
    pub fn all() -> Self {
        Self {
            bits: Self::all_bits(),
            _t: PhantomData,
        }
    }
}

impl<T: Code> FromIterator<T> for CodeSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Self {
        it.into_iter().fold(Self::EMPTY, Self::with)
    }
}

impl<T: Code + std::fmt::Display> std::fmt::Debug for CodeSet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|c| c.code()))
            .finish()
    }
}

impl<T: Code + Serialize> Serialize for CodeSet<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_seq(self.iter())
        } else {
            s.serialize_u64(self.bits)
        }
    }
}

impl<'de, T: Code + Deserialize<'de>> Deserialize<'de> for CodeSet<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let v = Vec::<T>::deserialize(d)?;
            Ok(v.into_iter().collect())
        } else {
            let bits = u64::deserialize(d)?;
            Self::from_bits(bits).ok_or_else(|| {
                serde::de::Error::custom(format!("code set has unknown bits {bits:#x}"))
            })
        }
    }
}

/// Purposes.
pub type Purposes = CodeSet<Purpose>;
/// Data categories.
pub type Categories = CodeSet<DataCategory>;
/// Actions.
pub type Actions = CodeSet<Action>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical position of every code is part of the protocol (PROTOCOL.md §4).
    #[test]
    fn codes_are_pinned() {
        let p: Vec<_> = Purpose::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(
            p,
            [
                "TREAT",
                "ETREAT",
                "HRESCH",
                "CLINTRCH",
                "HPAYMT",
                "HOPERAT",
                "PUBHLTH",
                "PATRQT",
                "FAMRQT",
                "PWATRNY",
                "COC",
                "HSYSADMIN"
            ]
        );
        let c: Vec<_> = DataCategory::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(
            c,
            [
                "vital-signs",
                "laboratory",
                "imaging",
                "activity",
                "social-history",
                "exam",
                "procedure",
                "survey",
                "therapy",
                "GDIS",
                "MH",
                "PSY",
                "SUD",
                "HIV",
                "SEX"
            ]
        );
        let a: Vec<_> = Action::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(a, ["access", "correct", "use", "disclose", "collect"]);
        let r: Vec<_> = Role::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(
            r,
            [
                "physician",
                "nurse",
                "paramedic",
                "pharmacist",
                "researcher",
                "lab-technician",
                "care-coordinator",
                "device",
                "service",
                "privacy-officer"
            ]
        );
        // Binary encoding of an enum is its position.
        assert_eq!(crate::codec::encode(&Purpose::Research), [2]);
    }

    #[test]
    fn code_sets_encode_as_bits_and_json_as_codes() {
        let s: Categories = [DataCategory::VitalSigns, DataCategory::Genetic]
            .into_iter()
            .collect();
        assert_eq!(s.bits(), 1 | (1 << 9));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"["vital-signs","GDIS"]"#
        );
        let back: Categories = crate::codec::decode("set", &crate::codec::encode(&s), 16).unwrap();
        assert_eq!(back, s);
        assert!(Categories::from_bits(1 << 40).is_none());
        let bad = crate::codec::encode(&(1u64 << 40));
        assert!(crate::codec::decode::<Categories>("set", &bad, 16).is_err());
    }

    #[test]
    fn unknown_codes_are_named() {
        let err = "TREATX".parse::<Purpose>().unwrap_err().to_string();
        assert!(err.contains("unknown Purpose code \"TREATX\""), "{err}");
        assert!(err.contains("HRESCH"), "{err}");
    }
}
